"""Server-side watchers: conditions only the server can see, raised as events like the devices'.

A periodic job (`WatcherJob`, runnable in the API or the receiver process, configured by a
`[watchers]` TOML table) checks each watcher's condition for every active device and writes the
outcome into the same `events` / `event_lifecycle` tables the receiver fills: raised once when the
condition starts, cleared once when it ends (cloud/watchers/store.py). Watchers:

* `offline`: nothing received from the device for `after_h` hours (48 h; per-device overrides);
* `heartbeat`: the device sends, but no status (heartbeat) for `after_h` hours;
* `night_parking`: over the last nights, the car habitually parks somewhere else than its
  registered home (a point of interest of kind 'home').
"""
