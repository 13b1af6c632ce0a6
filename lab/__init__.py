"""The simulated Đơn Dương site: SNMP agents and cameras on loopback, with faults on demand."""
