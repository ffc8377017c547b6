"""MLflow tracking, cut by what a stage needs: `store` (where runs go, error translation),
`runs` (training runs, tags, logging into a recorded run) and `models` (Keras models)."""
