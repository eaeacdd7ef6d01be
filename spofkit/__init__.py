"""spofkit: learn single points of failure, redundancy and failover by doing.

Real HTTP servers and a real reverse proxy on 127.0.0.1, real faults, real measurements.
"""

__version__ = "0.1.0"
