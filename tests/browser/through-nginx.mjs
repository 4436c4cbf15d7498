// Call pages through nginx (deploy/nginx/signalgrid.conf in front of two nodes, round robin,
// no sticky sessions), for tests/browser/e2e.mjs: open a page so that its socket lands on the
// node a scenario needs, and read where a page's signaling goes. Steered by requests made
// through nginx just before a page opens, not left to chance (see openThrough).

/**
 * @param {object} h e2e.mjs's helpers: openPage(url, name) -> page (a new browser context);
 *   until(what, probe, ok); log(...); forget(ctx): drop a context that is closed here from
 *   the scenario's list.
 */
export function throughNginx({ openPage, until, log, forget }) {
  /** Tries at most this many page loads to land a socket on a given node through nginx. */
  const LB_TRIES = 4;

  /** Where a page's signaling goes: its origin, its socket's URL and node. */
  const VIA = () => ({ origin: location.origin, wsUrl: window.signalgridCall?.client?.ws?.url || null,
    node: window.signalgridCall?.client?.nodeId || null });

  /** The node that answers GET /healthz through nginx (one request: round robin moves on by one). */
  async function probe(lb) {
    const r = await fetch(`${lb.base}/healthz`);
    return (await r.json()).nodeId;
  }

  /**
   * Whether a call page's socket lands on the node that answered the probe made just before the
   * page opened (null: not seen yet). nginx's round robin with two equal nodes alternates per
   * request, and a call page makes a fixed number of requests (the page, its modules, its REST
   * calls) before it opens its socket, so this is the same for every page: learned from the
   * first one, it tells the next pages where their sockets will go.
   */
  let lbSocketOnProbed = null;

  /**
   * Opens the call page `url` (served by nginx at `lb.base`) so that its socket lands on a node
   * for which `want(nodeId)` holds, and waits for that node (the `connected` frame's nodeId).
   * Round robin, no sticky sessions: the node is steered by requests made just before the page
   * opens. One probe (GET /healthz through nginx) says which node answered; if the page's
   * socket would then land on an unwanted node (lbSocketOnProbed), a second probe moves round
   * robin on by one. Until lbSocketOnProbed is known, or if something else moved round robin in
   * between, the page may land elsewhere: it then leaves the room (`leave-room`), is closed and
   * opened again, at most LB_TRIES times.
   * Returns { page, via: { origin, wsUrl, node, tries } }.
   */
  async function openThrough(url, name, lb, want, wantText) {
    for (let tries = 1; ; tries++) {
      let probed = await probe(lb);
      if (lbSocketOnProbed !== null && want(probed) !== lbSocketOnProbed) probed = await probe(lb);
      const page = await openPage(url, name);
      const via = await until(`${name}: the node of its socket`, () => page.evaluate(VIA), (v) => !!v.node);
      lbSocketOnProbed = via.node === probed;
      if (want(via.node)) return { page, via: { ...via, tries } };
      if (tries >= LB_TRIES) throw new Error(`${name}: its socket landed on ${via.node}, not ${wantText}, in ${tries} tries`);
      log(`${name}: its socket landed on ${via.node}, not ${wantText} (probe answered by ${probed}): opening the page again`);
      await page.evaluate(() => window.signalgridCall.client.leave());
      const ctx = page.context();
      forget(ctx);
      await ctx.close();
    }
  }

  /**
   * The two pages of `cfg` through nginx (`cfg.lb`): `first` ('client' or 'psychologist') opens
   * first, on `firstNode` if given (else wherever round robin puts it), and the other one on the
   * other node. Returns { client, psy, via: { client, psychologist } }.
   */
  async function twoPagesThrough(tag, cfg, first, firstNode = null) {
    const urls = { client: cfg.clientUrl, psychologist: cfg.psyUrl };
    const second = first === 'client' ? 'psychologist' : 'client';
    const a = await openThrough(urls[first], `${tag}-${first}`, cfg.lb, (n) => !firstNode || n === firstNode, firstNode || 'any');
    const b = await openThrough(urls[second], `${tag}-${second}`, cfg.lb, (n) => n !== a.via.node, `a node other than ${a.via.node}`);
    const pages = { [first]: a, [second]: b };
    return { client: pages.client.page, psy: pages.psychologist.page, via: { client: pages.client.via, psychologist: pages.psychologist.via } };
  }

  return { VIA, openThrough, twoPagesThrough };
}
