"""Tasks that plug into sparseconn: one package per task, plus its YAML configs."""
