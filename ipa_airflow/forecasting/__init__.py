"""Load forecasting: where the request rate comes from, and what it will be in the next interval."""
