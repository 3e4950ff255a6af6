"""edge/power: the tracker's energy budget — board profiles, battery models, accounting, planner.

`profile` says what each part draws (datasheet figures, TOML in profiles/), `battery` models the
vehicle's lead-acid battery and the backup Li-ion cell, `accounting` charges every state change,
fix, byte and CPU second to the budget, and `planner` chooses DRIVING / PARKED_WATCH /
PARKED_SLEEP / CRITICAL and their duty cycles within the budget. See docs/power.md.
"""
