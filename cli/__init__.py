"""The ``rationalize`` command: a thin click layer over the SDK, training and export libraries."""
