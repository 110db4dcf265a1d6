"""Rule fedmia_measure: the attacker's similarity matrices from one scenario's server log."""

from _common import logged

with logged(snakemake) as log:
    from fedaudit.attacks.fedmia_run import measure, save_measurement

    p = snakemake.params
    m = measure(server_log=p.server_log, rounds=p.rounds,
                patients=[tuple(x) for x in p.patients], model_base=p.model_base,
                per_orientation=p.per_orientation, units=p.units, batch_size=p.batch_size,
                loss=p.loss, chunk_size=p.chunk_size, device=p.device)
    save_measurement(snakemake.output[0], m)
    log.info("views %s, units %s for clients %s in %.1f s", list(m["views"]), list(m["units"]),
             list(m["centers"]), m["seconds"])
