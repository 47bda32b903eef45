"""Loading and chunking sources by content type; stable chunk ids."""
