"""Evaluation of synthetic CTs: slice-wise inference, SynthRAD2023 image metrics, statistics.

- :mod:`fedaudit.evaluation.inference` -- MR volume -> sCT in HU (paper 000 / FedSynthCT-Brain).
- :mod:`fedaudit.evaluation.metrics` -- MAE, PSNR, SSIM inside the head mask (paper 000 Eq. 3-6,
  SynthRAD2023 challenge definitions).
- :mod:`fedaudit.evaluation.stats` -- per-center summaries and paired Wilcoxon tests (paper 000
  Table 3).
"""
