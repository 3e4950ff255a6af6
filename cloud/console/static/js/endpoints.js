// Every API path the console calls, in one place (all of them are in the server's /openapi.json;
// a panel whose path is not documented there says so instead of calling it).

const enc = encodeURIComponent;

export const ENDPOINTS = {
  me: '/me',
  events: '/events',
  eventCounts: '/events/counts',
  eventAction: (device, eventId, verb) => `/devices/${enc(device)}/events/${enc(eventId)}/${verb}`,
  devices: '/devices',
  device: (id) => `/devices/${enc(id)}`,
  commands: (id) => `/devices/${enc(id)}/commands`,
  track: (id) => `/devices/${enc(id)}/track`,
  trips: (id) => `/devices/${enc(id)}/trips`,
  stops: (id) => `/devices/${enc(id)}/stops`,
  audit: '/audit',
};
