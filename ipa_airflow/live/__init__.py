"""The closed loop on real model servers: a window of a trace replayed as real requests through MLServer
replicas on this machine, adapted by the loop operator's own code, measured as the simulator measures."""
