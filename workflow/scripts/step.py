"""Every plugin rule: run its attack's step (``params.attack``, ``params.step``) through the
catalog (fedaudit.catalog.run_step); the logic lives in the plugin's steps module."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.catalog import run_step

    run_step(snakemake, log)
