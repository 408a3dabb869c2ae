"""The real model server (MLServer with its MLflow runtime) on this machine: its environment, one
server process per replica, and the V2 inference protocol spoken to it."""
