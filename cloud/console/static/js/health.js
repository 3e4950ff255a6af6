// Fleet health from the devices list: offline for more than N hours, low battery, outbox backlog,
// poor clock. Pure functions (no DOM), tested under Node.

export const DEFAULT_LIMITS = { offlineH: 24, lowSupplyV: 11.9, lowBackupV: 3.5, backlog: 100 };

const POOR_CLOCK = new Set([0, 1, 'UNKNOWN', 'RTC', 'unknown', 'rtc']);

/** {offline, lowBattery, backlog, clock}: the devices in each trouble list (one device may be in several). */
export function fleetHealth(devices, limits = DEFAULT_LIMITS, now = Date.now()) {
  const l = { ...DEFAULT_LIMITS, ...limits };
  const seen = (d) => d.lastSeenAt ?? d.lastMessageAt;
  return {
    offline: devices.filter((d) => seen(d) == null || now - seen(d) > l.offlineH * 3600e3),
    lowBattery: devices.filter((d) => (d.supplyV != null && d.supplyV < l.lowSupplyV)
      || (d.backupV != null && d.backupV < l.lowBackupV)
      || d.powerState === 'BACKUP_BATTERY' || d.powerState === 5),
    backlog: devices.filter((d) => d.queueDepth != null && d.queueDepth > l.backlog),
    clock: devices.filter((d) => d.clockQuality != null && POOR_CLOCK.has(d.clockQuality)),
  };
}
