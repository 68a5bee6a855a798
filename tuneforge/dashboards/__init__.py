"""Reports built from MLflow and Ray data. Never imports trainables."""
