"""``guardian chaos``: workers under open-loop load through a loopback model server,
faults applied on a schedule, then a check of every topic for what the faults cost."""
