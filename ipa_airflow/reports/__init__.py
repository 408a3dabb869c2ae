"""Reports: plots and tables that read results and never compute decisions."""
