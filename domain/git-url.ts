// The key a clone URL is found by: webhooks name a repository by any of its URLs (https, ssh,
// scp-like), and the repositories table stores this key in an indexed column (source_url_key).
// Pure: imported by the database layer, the API and workflow code alike.

/**
 * A comparable key for a clone URL: host and path, lowercased, without scheme, credentials,
 * `.git` or trailing slash, so `git@host:a/b.git` and `https://host/a/b` are one repository.
 */
export function normalizeGitUrl(url: string): string {
  let hostPath: string;
  const scp = /^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(?!\/\/)(.+)$/.exec(url);
  if (scp) hostPath = `${scp[1]}/${scp[2]}`;
  else {
    try {
      const u = new URL(url);
      hostPath = `${u.hostname}${u.port && !['80', '443', '22'].includes(u.port) ? `:${u.port}` : ''}${u.pathname}`;
    } catch {
      hostPath = url;
    }
  }
  return hostPath.toLowerCase().replace(/\/+$/, '').replace(/\.git$/, '').replace(/\/+$/, '');
}
