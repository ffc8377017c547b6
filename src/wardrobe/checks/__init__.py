"""The data checks: `tables`, `suites` (Great Expectations) and `validate` (the validate stage)
apart from `verdict`, the small reader of their result that the training stages use."""
