"""The ``compat`` presets: one module per library, each a plain function of (targets, predictions, options).

``common`` holds what they share (their inputs, their rows, the refusal of an option a library lacks);
``service.core.compat`` resolves the options, dispatches and reduces.
"""
