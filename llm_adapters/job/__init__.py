"""One job: its config checks, the recipe from a composed config to its record, resume and the job directory, the
record's axes, W&B, the sweep's summary and plan mode."""
