"""Tools an agent may call: the registry, the audit log and the built-ins."""
