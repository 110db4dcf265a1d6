"""N4 bias-field correction (Tustison et al. 2010) on a phantom with a known smooth field."""

from __future__ import annotations

import numpy as np
import phantoms as P
import pytest
import SimpleITK as sitk

from fedaudit.preprocess.n4 import n4_correct


@pytest.fixture(scope="module")
def biased():
    mr, labels, field = P.mr_phantom(3.0, bias=True, noise=5.0)
    return mr, labels, field, P.head_truth_mask(labels)


def _wm_cv(img: sitk.Image, labels: sitk.Image) -> float:
    v = sitk.GetArrayViewFromImage(img)[sitk.GetArrayViewFromImage(labels) == P.WM]
    return float(v.std() / v.mean())


@pytest.mark.parametrize("backend", ["simpleitk", "ants"])
def test_n4_removes_known_bias(biased, backend):
    if backend == "ants":
        pytest.importorskip("ants")
    mr, labels, field, mask = biased
    res = n4_correct(mr, mask, backend=backend, shrink=4, threads=2)
    before, after = _wm_cv(mr, labels), _wm_cv(res.corrected, labels)
    assert before > 0.06
    assert after < 0.6 * before, (before, after)
    m = sitk.GetArrayViewFromImage(mask) > 0
    est = np.log(sitk.GetArrayViewFromImage(res.bias_field)[m])
    true = np.log(sitk.GetArrayViewFromImage(field)[m])
    # N4's field is defined up to a constant factor: compare log fields by correlation
    assert np.corrcoef(est, true)[0, 1] > 0.9
    assert res.corrected.GetPixelID() == sitk.sitkFloat32
    assert res.corrected.GetSize() == mr.GetSize()
    assert np.allclose(res.corrected.GetOrigin(), mr.GetOrigin())
    assert 0 < res.field_min < res.field_max
    corrected = sitk.GetArrayViewFromImage(res.corrected)
    ratio = sitk.GetArrayViewFromImage(mr)[m] / sitk.GetArrayViewFromImage(res.bias_field)[m]
    assert np.allclose(corrected[m], ratio, rtol=1e-4, atol=1e-3)


def test_n4_rejects_unknown_backend(biased):
    mr, _, _, mask = biased
    with pytest.raises(ValueError, match="simpleitk.*ants"):
        n4_correct(mr, mask, backend="fsl")
