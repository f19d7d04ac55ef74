/**
 * The network a build's RUN steps live in (SPEC §1 "builder", §2 "Isolation"): buildkitd's CNI
 * bridge, one per Kiln data dir, behind an nftables firewall so a step reaches public addresses
 * (through the bridge plugin's NAT) and nothing of the build host, the private ranges, or another
 * build on the same bridge.
 *
 * Why nftables tables of our own rather than iptables rules in INPUT/FORWARD: the CNI firewall
 * plugin inserts its own ACCEPT jump at the top of FORWARD whenever it finds it missing, so any
 * iptables rule we put first can later end up second. A separate nftables table hooked at a
 * priority before iptables' (filter - 10) is evaluated first whatever anybody does to the
 * iptables chains, and a reject there is final. (Debian's iptables is the nf_tables backend, so
 * both live in the same kernel tables.)
 */
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { run } from './process-run.js';

/** Never reachable from a RUN step unless allow-listed: private, shared, link-local, metadata. */
export const BLOCKED_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
] as const;
export const BLOCKED_V6 = ['::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8'] as const;

export interface BuildNetwork {
  /** Linux bridge buildkitd attaches RUN steps to (≤ 15 characters). */
  bridge: string;
  /** IPv4 subnet of the bridge; the host is its first address (the gateway). */
  subnet: string;
  gateway: string;
  /** nftables table names (inet: IP filtering, bridge: step-to-step isolation). */
  table: string;
}

/**
 * One exception to the firewall (`KILN_BUILD_NETWORK_ALLOW`): a CIDR or address (any port), or an
 * address with a TCP port. Host names are resolved once, when the rules are installed.
 */
export type NetworkAllowEntry = { cidr: string; port?: undefined } | { host: string; port: number };

/** Parses `10.0.0.0/8,192.168.1.5,mirror.lan:3128,[fd00::1]:443`; throws naming the bad entry. */
export function parseNetworkAllow(value: string | undefined): NetworkAllowEntry[] {
  const out: NetworkAllowEntry[] = [];
  for (const raw of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const cidr = /^([0-9.]+|[0-9a-f:]+)(?:\/(\d{1,3}))?$/i.exec(raw);
    if (cidr && isIP(cidr[1]!)) {
      const max = isIP(cidr[1]!) === 4 ? 32 : 128;
      const bits = cidr[2] === undefined ? max : Number(cidr[2]);
      if (bits > max) throw new Error(`KILN_BUILD_NETWORK_ALLOW: "${raw}" has a prefix longer than /${max}`);
      out.push({ cidr: `${cidr[1]!.toLowerCase()}/${bits}` });
      continue;
    }
    const hostPort = /^(?:\[([0-9a-f:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/i.exec(raw);
    const port = Number(hostPort?.[3]);
    if (!hostPort || port < 1 || port > 65535) {
      throw new Error(`KILN_BUILD_NETWORK_ALLOW: "${raw}" is neither a CIDR/address nor host:port`);
    }
    out.push({ host: (hostPort[1] ?? hostPort[2]!).toLowerCase(), port });
  }
  return out;
}

/**
 * The bridge and subnet of the buildkitd that serves `dataDir`: stable for one data dir and
 * distinct between two (a running `npm start` and `npm test` each get their own, so stopping one
 * never removes the other's firewall). Subnets are /24s of 10.213.0.0/16.
 */
export function buildNetworkFor(dataDir: string, taken: string[] = []): BuildNetwork {
  const h = createHash('sha256').update(resolve(dataDir)).digest();
  const id = h.subarray(0, 4).toString('hex');
  let third = h[4]! % 254;
  for (let i = 0; i < 254 && taken.includes(`10.213.${third}.0/24`); i++) third = (third + 1) % 254;
  return { bridge: `kiln${id}`, subnet: `10.213.${third}.0/24`, gateway: `10.213.${third}.1`, table: `kiln_${id}` };
}

/** The build network of infra/docker-compose.yml's buildkitd containers (one bridge per container). */
export const COMPOSE_BUILD_NETWORK: BuildNetwork = { bridge: 'kiln0', subnet: '10.213.0.0/24', gateway: '10.213.0.1', table: 'kiln_compose' };

/** The host's DNS resolvers, which RUN steps need to resolve package hosts (port 53 only). */
export function hostResolvers(resolvConf = '/etc/resolv.conf'): string[] {
  let text = '';
  try {
    text = readFileSync(resolvConf, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)]
    .map((m) => m[1]!.replace(/%.*$/, ''))
    // A loopback resolver is not reachable from a step: BuildKit then gives steps public resolvers.
    .filter((ip) => isIP(ip) && !/^127\./.test(ip) && ip !== '::1');
}

const family = (addr: string) => (isIP(addr.replace(/\/\d+$/, '')) === 6 ? 'ip6' : 'ip');

/**
 * The nftables script for one build network (applied atomically with `nft -f`). `allow` holds
 * resolved entries (addresses, not host names). Accepting here only means "not refused by Kiln":
 * the packet still meets every later chain, CNI's included.
 */
export function firewallRuleset(net: BuildNetwork, allow: Array<{ cidr: string; port?: number }>, resolvers: string[]): string {
  const q = JSON.stringify;
  const allowRules = allow.map((a) => `    ${family(a.cidr)} daddr ${a.cidr}${a.port ? ` tcp dport ${a.port}` : ''} accept`);
  const dnsRules = resolvers.flatMap((ip) => [
    `    ${family(ip)} daddr ${ip} udp dport 53 accept`,
    `    ${family(ip)} daddr ${ip} tcp dport 53 accept`,
  ]);
  // TCP gets a reset and the rest an ICMP error, so a step fails at once instead of hanging.
  const masquerade = [
    // NAT for steps' public egress, once for the whole bridge (the CNI bridge plugin's ipMasq would
    // add and remove iptables chains for every RUN step, which costs each step ~100 ms).
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${net.subnet} oifname != ${q(net.bridge)} masquerade`,
    '  }',
  ];
  const refuse = (match: string) => [`    ${match}meta l4proto tcp reject with tcp reset`, `    ${match}reject with icmpx admin-prohibited`];
  return [
    `# Kiln build network ${net.bridge} (${net.subnet}); generated by infra/build-network.ts`,
    `table inet ${net.table}`,
    `delete table inet ${net.table}`,
    `table bridge ${net.table}`,
    `delete table bridge ${net.table}`,
    `table inet ${net.table} {`,
    // Every address of the build host (gateway, other interfaces, loopback aliases), any port.
    '  chain step_to_host {',
    ...allowRules,
    ...refuse(''),
    '  }',
    '  chain step_forward {',
    ...allowRules,
    ...dnsRules,
    ...refuse(`ip daddr { ${BLOCKED_V4.join(', ')} } `),
    ...refuse(`ip6 daddr { ${BLOCKED_V6.join(', ')} } `),
    '  }',
    '  chain input {',
    '    type filter hook input priority filter - 10; policy accept;',
    `    iifname ${q(net.bridge)} jump step_to_host`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter - 10; policy accept;',
    `    iifname ${q(net.bridge)} jump step_forward`,
    '  }',
    ...masquerade,
    '}',
    // Frames switched between two ports of the bridge never reach the IP hooks: one build's step
    // must not talk to another's (possibly another namespace's) on the same bridge. Matched by
    // subnet because `meta ibrname` needs a bridge module kernels often lack.
    `table bridge ${net.table} {`,
    '  chain forward {',
    '    type filter hook forward priority filter - 10; policy accept;',
    `    ether type ip ip saddr ${net.subnet} ip daddr ${net.subnet} drop`,
    `    ether type arp arp saddr ip ${net.subnet} arp daddr ip ${net.subnet} drop`,
    '  }',
    '}',
  ].join('\n') + '\n';
}

async function resolveAllow(allow: NetworkAllowEntry[]): Promise<Array<{ cidr: string; port?: number }>> {
  const out: Array<{ cidr: string; port?: number }> = [];
  for (const a of allow) {
    if (a.port === undefined) {
      out.push({ cidr: a.cidr });
      continue;
    }
    const addrs = isIP(a.host) ? [{ address: a.host }] : await lookup(a.host, { all: true });
    for (const { address } of addrs) out.push({ cidr: `${address}/${isIP(address) === 6 ? 128 : 32}`, port: a.port });
  }
  return out;
}

export interface BuildFirewall {
  network: BuildNetwork;
  ruleset: string;
  remove(): Promise<void>;
}

async function nft(args: string[], input?: string): Promise<void> {
  const r = await run('nft', args, { timeoutMs: 20_000, input });
  if (r.code !== 0) {
    throw new Error(
      `nft ${args.join(' ')} failed (code ${r.code}): ${r.stderr.trim()}` +
        (r.code === null ? ' — is the Debian package nftables installed? (bash infra/setup-tools.sh)' : ''),
    );
  }
}

/** Installs (or replaces, idempotently) the firewall of one build network; remove() undoes it. */
export async function installBuildFirewall(o: {
  network: BuildNetwork;
  allow?: NetworkAllowEntry[];
  resolvers?: string[];
}): Promise<BuildFirewall> {
  const ruleset = firewallRuleset(o.network, await resolveAllow(o.allow ?? []), o.resolvers ?? hostResolvers());
  await nft(['-f', '-'], ruleset);
  // Hosts with Docker set iptables' FORWARD policy to DROP. What reaches iptables from the bridge
  // has already passed Kiln's refusals above, so let it through there (once, not per step).
  const forwardRules = [
    ['FORWARD', '-i', o.network.bridge, '-j', 'ACCEPT'],
    ['FORWARD', '-o', o.network.bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
  ];
  for (const rule of forwardRules) {
    if ((await run('iptables', ['-C', ...rule], { timeoutMs: 20_000 })).code !== 0) await run('iptables', ['-I', ...rule], { timeoutMs: 20_000 });
  }
  return {
    network: o.network,
    ruleset,
    async remove() {
      for (const rule of forwardRules) await run('iptables', ['-D', ...rule], { timeoutMs: 20_000 });
      for (const fam of ['inet', 'bridge']) {
        const r = await run('nft', ['delete', 'table', fam, o.network.table], { timeoutMs: 20_000 });
        if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) throw new Error(`nft delete table ${fam} ${o.network.table}: ${r.stderr.trim()}`);
      }
      // buildkitd leaves its bridge behind; nothing else uses it once the daemon is gone.
      await run('ip', ['link', 'delete', o.network.bridge], { timeoutMs: 10_000 });
    },
  };
}

/**
 * The CNI network buildkitd puts RUN steps on (networkMode "cni"): a bridge with the host as
 * gateway and nothing else. Filtering and NAT are the nftables tables above, installed once, so
 * starting and ending a step runs no iptables at all (BuildKit's built-in "bridge" mode adds the
 * firewall plugin and ipMasq, each editing iptables per step, and cannot use its namespace pool).
 */
export function cniConfList(net: BuildNetwork): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: `kiln-${net.table.replace(/^kiln_/, '')}`,
      plugins: [
        {
          type: 'bridge',
          bridge: net.bridge,
          isGateway: true,
          isDefaultGateway: true,
          ipMasq: false,
          ipam: { type: 'host-local', ranges: [[{ subnet: net.subnet, gateway: net.gateway }]] },
        },
      ],
    },
    null,
    2,
  );
}

/** IPv4 subnets routed on this host (to keep a build bridge off a network already in use). */
export async function routedSubnets(): Promise<string[]> {
  const r = await run('ip', ['-4', 'route', 'show'], { timeoutMs: 10_000 });
  return [...r.stdout.matchAll(/^(\d+\.\d+\.\d+\.\d+\/\d+)\s+dev\s+(\S+)/gm)].filter((m) => !m[2]!.startsWith('kiln')).map((m) => m[1]!);
}
