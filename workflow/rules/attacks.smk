# The threat catalog's jobs (fedaudit.catalog): every registered attack and client attack brings
# its own rules file (rules.smk in its folder; built-ins under src/fedaudit/attacks/, a study's
# own through the config's `plugins`). Each registers its outputs with register_outputs
# (common.smk).

for _plugin in [*CATALOG.client_attacks.values(), *CATALOG.attacks.values()]:
    if _plugin.folder is not None and (_plugin.folder / "rules.smk").is_file():

        include: str(_plugin.folder / "rules.smk")


rule attacks_all:
    input:
        ATTACK_OUTPUTS,
