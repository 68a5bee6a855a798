"""The platform: the runner that builds the Tuner, Ray connection, MLflow tracking, the CLI."""
