"""DLG gradient inversion (Zhu et al. 2019; paper 000 "Gradient Inversion"): the algorithm in
:mod:`.inversion`, the rules' steps in :mod:`.steps`, its table and finding in :mod:`.report`."""
