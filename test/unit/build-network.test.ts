import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildNetworkFor, cniConfList, COMPOSE_BUILD_NETWORK, firewallRuleset, hostResolvers, parseNetworkAllow } from '../../infra/build-network';
import { buildkitdToml } from '../../infra/buildkitd';

describe('KILN_BUILD_NETWORK_ALLOW', () => {
  it('takes CIDRs, bare addresses and host:port', () => {
    expect(parseNetworkAllow('10.1.0.0/16, 192.168.1.5,mirror.lan:3128,[fd00::1]:443,fd00::/8')).toEqual([
      { cidr: '10.1.0.0/16' },
      { cidr: '192.168.1.5/32' },
      { host: 'mirror.lan', port: 3128 },
      { host: 'fd00::1', port: 443 },
      { cidr: 'fd00::/8' },
    ]);
    expect(parseNetworkAllow('')).toEqual([]);
    expect(parseNetworkAllow(undefined)).toEqual([]);
  });
  it.each(['10.0.0.0/33', 'mirror.lan', 'host:0', 'host:70000', 'http://x:80', '1.2.3.4/abc'])('refuses %s, naming it', (bad) => {
    expect(() => parseNetworkAllow(bad)).toThrow(bad);
  });
});

describe('build network', () => {
  it('is stable per data dir, distinct between two, and avoids routed subnets', () => {
    const a = buildNetworkFor('/srv/kiln-a');
    expect(buildNetworkFor('/srv/kiln-a')).toEqual(a);
    expect(a.bridge.length).toBeLessThanOrEqual(15);
    expect(a.gateway).toBe(a.subnet.replace(/0\/24$/, '1'));
    expect(buildNetworkFor('/srv/kiln-b').bridge).not.toBe(a.bridge);
    expect(buildNetworkFor('/srv/kiln-a', [a.subnet]).subnet).not.toBe(a.subnet);
  });

  it('refuses every host address and the private ranges, allows exceptions and DNS resolvers first', () => {
    const net = buildNetworkFor('/srv/kiln-a');
    const rules = firewallRuleset(net, [{ cidr: '10.9.9.9/32', port: 3128 }, { cidr: '172.20.0.0/16' }], ['10.255.255.53']);
    const hostChain = rules.slice(rules.indexOf('chain step_to_host'), rules.indexOf('chain step_forward'));
    // Allowed entries come before the catch-all reject.
    expect(hostChain.indexOf('ip daddr 10.9.9.9/32 tcp dport 3128 accept')).toBeLessThan(hostChain.indexOf('reject with icmpx'));
    expect(hostChain).toMatch(/^\s+meta l4proto tcp reject with tcp reset$/m);
    const fwd = rules.slice(rules.indexOf('chain step_forward'), rules.indexOf('chain input'));
    for (const r of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10']) expect(fwd).toContain(r);
    expect(fwd.indexOf('ip daddr 10.255.255.53 udp dport 53 accept')).toBeLessThan(fwd.indexOf('reject'));
    expect(fwd.indexOf('ip daddr 172.20.0.0/16 accept')).toBeLessThan(fwd.indexOf('reject'));
    // Hooked before iptables' filter chains (priority 0), on this bridge only.
    expect(rules).toContain(`iifname "${net.bridge}" jump step_to_host`);
    expect(rules).toContain(`iifname "${net.bridge}" jump step_forward`);
    expect(rules.match(/priority filter - 10/g)).toHaveLength(3);
    // Re-applying replaces the tables atomically (idempotent).
    expect(rules.indexOf(`delete table inet ${net.table}`)).toBeLessThan(rules.indexOf(`table inet ${net.table} {`));
    // Steps on the same bridge cannot reach each other.
    expect(rules).toContain(`ip saddr ${net.subnet} ip daddr ${net.subnet} drop`);
  });

  it('reads the host resolvers a step needs, skipping loopback ones', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kiln-resolv-'));
    const file = path.join(dir, 'resolv.conf');
    writeFileSync(file, 'nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\nnameserver fe80::1%eth0\n');
    expect(hostResolvers(file)).toEqual(['10.0.0.2', 'fe80::1']);
  });

  it('configures buildkitd for bridge networking with no insecure entitlement', () => {
    const net = buildNetworkFor('/srv/kiln-a');
    const toml = buildkitdToml([], {}, { ...net, cniConfigPath: '/d/cni.conflist' });
    expect(toml).toContain('insecure-entitlements = []');
    expect(toml).toContain('networkMode = "cni"');
    expect(toml).toContain('cniConfigPath = "/d/cni.conflist"');
    const conf = JSON.parse(cniConfList(net));
    // One bridge plugin: no per-step iptables (no firewall plugin, no ipMasq); NAT is ours.
    expect(conf.plugins).toEqual([expect.objectContaining({ type: 'bridge', bridge: net.bridge, ipMasq: false, isGateway: true })]);
    expect(conf.plugins[0].ipam.ranges[0][0]).toEqual({ subnet: net.subnet, gateway: net.gateway });
    expect(firewallRuleset(net, [], [])).toContain(`ip saddr ${net.subnet} oifname != "${net.bridge}" masquerade`);
  });
});

describe('the compose topology', () => {
  const read = (f: string) => readFileSync(new URL(`../../infra/${f}`, import.meta.url), 'utf8');

  it("applies the same firewall (the committed ruleset is what build-network.ts generates for it)", () => {
    // Regenerate with: firewallRuleset(COMPOSE_BUILD_NETWORK, [], []) → infra/compose/build-firewall.nft
    expect(read('compose/build-firewall.nft')).toBe(firewallRuleset(COMPOSE_BUILD_NETWORK, [], []));
    const toml = read('buildkitd.toml');
    expect(toml).toContain(`bridgeName = "${COMPOSE_BUILD_NETWORK.bridge}"`);
    expect(toml).toContain(`bridgeSubnet = "${COMPOSE_BUILD_NETWORK.subnet}"`);
    expect(toml).toContain('networkMode = "bridge"');
    expect(toml).toContain('insecure-entitlements = []');
    expect(read('compose/buildkitd-entrypoint.sh')).toMatch(/nft -f \/etc\/kiln\/build-firewall.nft\nexec buildkitd .*--addr unix:\/\//);
  });

  it('never exposes buildkitd on TCP and keeps Temporal and Postgres off the build hosts\' network', () => {
    const compose = read('docker-compose.yml');
    expect(compose).not.toMatch(/tcp:\/\/(0\.0\.0\.0|buildkitd)/);
    const service = (name: string) => compose.slice(compose.indexOf(`\n  ${name}:`), compose.indexOf('\n\n', compose.indexOf(`\n  ${name}:`)));
    for (const name of ['temporal', 'postgres']) expect(service(name)).toContain('networks: [control]');
    expect(compose).toMatch(/x-buildkitd: &buildkitd[\s\S]*?networks: \[images\]/);
  });
});

