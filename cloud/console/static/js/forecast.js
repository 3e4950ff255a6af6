// The 90-day energy forecast curve. Pure function (no DOM), tested under Node.

/**
 * The share (%) of the parked-car energy budget left over the next horizonDays, as the device's
 * own plan projects it: the budget lasts forecastDays at the plan's average draw, linearly.
 * Points [day, percent]; null without a forecast.
 */
export function forecastSeries(forecastDays, horizonDays = 90) {
  if (forecastDays == null || !(forecastDays > 0)) return null;
  const end = Math.min(forecastDays, horizonDays);
  return [[0, 100], [end, 100 * (1 - end / forecastDays)], ...(forecastDays < horizonDays ? [[horizonDays, 0]] : [])];
}
