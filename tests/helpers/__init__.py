"""What several test modules share: configs, tiny models, subprocess jobs, the PEFT comparisons' inputs."""
