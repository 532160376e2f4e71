// The baseline of bench/bench_window.py: pywebview's own page <-> Python channel, the js_api
// function `echo(x)`, called in the same app window. This page is served by a plain loopback
// server without the bridge's CSP: pywebview builds `pywebview.api` with `new Function` and
// returns values through `eval`, both of which that CSP forbids.
'use strict';

const MIB = 1 << 20;

const log = (text) => { document.getElementById('log').textContent += `\n${text}`; };

function settings(quick) {
  return quick
    ? {repeats: 1, serial: 200, inFlight: 1000, big: 5}
    : {repeats: 3, serial: 500, inFlight: 3000, big: 10};
}

async function echo(x) {
  const back = await pywebview.api.echo(x);
  if (back !== x) throw new Error(`echo returned ${String(back).slice(0, 40)}`);
}

async function serial(n) {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await echo(`message ${i}`);
  return n / ((performance.now() - t0) / 1000);
}

// `lanes` calls in flight at all times, `n` in total.
async function inFlight(n, lanes) {
  let next = 0;
  const lane = async () => { while (next < n) await echo(`message ${next++}`); };
  const t0 = performance.now();
  await Promise.all(Array.from({length: lanes}, lane));
  return n / ((performance.now() - t0) / 1000);
}

async function bigRoundTrips(n) {
  const text = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(MIB / 32).slice(0, MIB);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await echo(text);
  return n / ((performance.now() - t0) / 1000); // MiB/s: each call carries 1 MiB each way
}

async function repeat(n, fn) {
  const values = [];
  for (let i = 0; i < n; i++) values.push(await fn());
  values.sort((a, b) => a - b);
  return {median: values[Math.floor(values.length / 2)], best: values[values.length - 1]};
}

/** Medians and bests of `repeats` runs: one call at a time, 100 in flight, 1 MiB strings. */
globalThis.jsApiBench = async ({quick = false} = {}) => {
  const s = settings(quick);
  await echo('warm up'); // on Qt the first call also waits for pywebview's QWebChannel
  const results = {};
  for (const [key, run] of [
    ['one_at_a_time_msgs_per_s', () => serial(s.serial)],
    ['in_flight_100_msgs_per_s', () => inFlight(s.inFlight, 100)],
    ['mib_string_round_trip_mib_per_s', () => bigRoundTrips(s.big)],
  ]) {
    results[key] = await repeat(s.repeats, run);
    log(`js_api ${key}: ${Math.round(results[key].median)}`);
  }
  return results;
};
