"""CNN training: a fold job's definition, its compiled-model session, the fold loop with resume,
the one owner of a fold's work folder, and the distilled student."""
