"""Data poisoning by one client (paper 000, "Data Poisoning", Eq. 2): the noise in :mod:`.noise`,
registered as a client attack (:mod:`.plugin`) with Table 3 and its findings (:mod:`.report`)."""
