"""The data checks: `tables` and `suites` (Great Expectations, the validate stage) apart from
`verdict`, the small reader of their result that the training stages use."""
