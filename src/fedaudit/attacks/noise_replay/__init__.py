"""The noise replay attack: the server regenerates the clients' privacy noise."""
