"""FedAudit: security audit of federated brain MRI-to-synthetic-CT translation."""

__version__ = "0.1.0"
