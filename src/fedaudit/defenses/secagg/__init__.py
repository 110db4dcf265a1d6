"""SecAgg+ secure aggregation (Bell et al., CCS 2020) through Flower's workflow and client mod."""
