"""The model boundary: embedders now, chat models later, and wrappers that compose."""
