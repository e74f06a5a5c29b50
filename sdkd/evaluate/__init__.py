"""Test-split evaluation of trained runs: metrics, spectra and the evaluation file.

    from sdkd.evaluate.run import evaluate_run          # writes the JSON (needs torch)
    from sdkd.evaluate.format import read_evaluation    # reads it back (no torch)

``format`` owns the file (docs/evaluation-format.md): its writer, the whole-file check
and one parser per section; ``metrics`` holds the streaming error accumulators,
``spectra`` the radial energy spectra, ``run`` the job itself. Nothing is imported
here, so that the report can read evaluation files without importing torch.
"""
