"""Operating the node: audit queries, health and metrics, audit messages, doctor, retention."""
