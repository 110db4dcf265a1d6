"""Rule dlg: DLG against one center's shared gradient: the UNet, the same UNet without BatchNorm
(the positive control) and the MLP code check, one row each."""

from _common import logged

with logged(snakemake) as log:
    from pathlib import Path

    from fedaudit.attacks.dlg import NETWORKS, DLGConfig, run_dlg, save_result
    from fedaudit.io import write_json
    from fedaudit.preprocess.outliers import read_excluded
    from fedaudit.runtime import derive_seed

    p, wc = snakemake.params, snakemake.wildcards
    # The client's private slice comes from data it trained on: not from a QC-excluded patient.
    excluded = read_excluded(snakemake.input.qc_flags)
    train_folders = [f for f in p.train_folders if (wc.train_center, Path(f).name) not in excluded]
    opt = wc.optimizer
    spec = p.dlg[opt]
    cfg = DLGConfig(optimizer=opt, iterations=p.dlg["iterations"], lr=spec["lr"],
                    step_size=spec.get("step_size", 10000), gamma=spec.get("gamma", 0.1),
                    history_size=spec.get("history_size", 100), snapshots=p.dlg["snapshots"],
                    target=p.dlg["target"], loss=p.loss)
    # One seed per center (not per optimiser or scenario): every optimiser and scenario attacks
    # the same private slice from the same initial dummy, so their results compare directly.
    outcome = run_dlg(server_log=p.server_log, round=p.dlg["round"],
                      train_folders=train_folders, model_base=p.model_base, cfg=cfg,
                      seed=derive_seed(p.seed, "dlg", wc.train_center), device=p.device,
                      control_hidden=p.dlg["control_hidden"], batch_size=p.dlg["batch_size"],
                      log=log)
    save_result(snakemake.output.result, outcome)
    rows = []
    for network in NETWORKS:
        res = outcome[network]
        rows.append({"scenario": wc.scenario, "center": wc.train_center, "optimizer": opt,
                     "network": network, "round": outcome["round"], "target": cfg.target,
                     "batch_size": p.dlg["batch_size"], "iterations": int(res.final_iteration),
                     # ssim_raw, psnr_raw, ssim_fit, psnr_fit, gain, offset
                     **outcome["quality"][network],
                     # loss[i] is the objective before update i+1: the last one evaluated
                     "last_matching_loss": float(res.loss[res.final_iteration - 1])
                     if res.final_iteration > 0 else float("nan"),
                     "seconds": res.seconds, "iterations_per_s": res.iterations_per_s,
                     "stopped_early": bool(res.stopped_early),
                     "slices": outcome["provenance"]})
        q = outcome["quality"][network]
        log.info("%s: in the mask, raw SSIM %.3f, PSNR %.2f dB; after the gain/offset fit "
                 "(gain %.3g, offset %.3g) SSIM %.3f, PSNR %.2f dB (%.1f it/s)", network,
                 q["ssim_raw"], q["psnr_raw"], q["gain"], q["offset"], q["ssim_fit"],
                 q["psnr_fit"], res.iterations_per_s)
    write_json({"results": rows}, snakemake.output.metrics)
