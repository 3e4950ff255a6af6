// The alert inbox's order and filters. Pure functions (no DOM), tested under Node.

export const SEVERITY_RANK = { EMERGENCY: 3, ALERT: 2, WARNING: 1 };

/** EMERGENCY first, then ALERT, then WARNING; within a severity the newest first. */
export function inboxOrder(events) {
  return [...events].sort((a, b) =>
    (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) || (b.t ?? 0) - (a.t ?? 0));
}

/** Events matching every filter that is set ({detector, device, state, severity}; '' = any). */
export function applyFilters(events, filters) {
  return events.filter((e) =>
    (!filters.detector || e.detector === filters.detector)
    && (!filters.device || e.deviceId === filters.device)
    && (!filters.state || e.state === filters.state)
    && (!filters.severity || e.severity === filters.severity));
}

/** The distinct values of one field, sorted, for a filter's choices. */
export function choices(events, field) {
  return [...new Set(events.map((e) => e[field]).filter((v) => v != null && v !== ''))].sort();
}

/** Counts by severity: {EMERGENCY: n, ALERT: n, WARNING: n}. */
export function countBySeverity(events) {
  const out = { EMERGENCY: 0, ALERT: 0, WARNING: 0 };
  for (const e of events) if (e.severity in out) out[e.severity] += 1;
  return out;
}
