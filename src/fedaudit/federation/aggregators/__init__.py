"""The aggregation rules the catalog knows: one folder each (``plugin.py`` + ``schema.yaml`` for
its parameters, mounted at the config's ``aggregations.<name>``). The arithmetic is in
:mod:`fedaudit.federation.aggregation`."""
