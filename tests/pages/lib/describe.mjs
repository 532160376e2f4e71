export function describe(api) {
  return typeof api === 'function' ? 'api ready' : 'api missing';
}
