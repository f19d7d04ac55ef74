/**
 * The key Kiln signs registry tokens with, and the self-signed certificate the registry trusts
 * (Distribution's `auth.token.rootcertbundle`). Generated once into the data dir (0600), so a
 * restart keeps tokens valid and the registry's configuration unchanged.
 */
import { createHash, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { importPKCS8, type CryptoKey as JoseKey } from 'jose';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface RegistryTokenKeys {
  /** PEM files: the private key (Kiln) and the certificate (the registry). */
  keyFile: string;
  certFile: string;
  /** The libtrust key id Distribution looks the key up by (JWT header `kid`). */
  kid: string;
  privateKey: JoseKey;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/**
 * libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32 without
 * padding, in groups of four joined by ':' (how Distribution names the keys it trusts).
 */
export function libtrustKeyId(spkiDer: Buffer): string {
  const bytes = createHash('sha256').update(spkiDer).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

function writeSecretFile(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
}

async function generate(keyFile: string, certFile: string): Promise<void> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: createHash('sha256').update(String(Date.now()) + Math.random()).digest('hex').slice(0, 16),
    name: 'CN=Kiln registry token issuer',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 10 * 365 * 24 * 3600_000),
    signingAlgorithm: ALG,
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]["keys"],
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  writeSecretFile(keyFile, `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`);
  writeFileSync(certFile, cert.toString('pem') + '\n', { mode: 0o644 });
}

/** Loads the signing key and certificate from `dir`, generating them on first use. */
export async function loadOrCreateRegistryTokenKeys(dir: string): Promise<RegistryTokenKeys> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, 'registry-token.key');
  const certFile = path.join(dir, 'registry-token.crt');
  if (!existsSync(keyFile) || !existsSync(certFile)) await generate(keyFile, certFile);
  const cert = new x509.X509Certificate(readFileSync(certFile, 'utf8'));
  const kid = libtrustKeyId(Buffer.from(cert.publicKey.rawData));
  const privateKey = await importPKCS8(readFileSync(keyFile, 'utf8'), 'ES256');
  return { keyFile, certFile, kid, privateKey };
}
