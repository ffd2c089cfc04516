#!/usr/bin/env python3
"""auditor_page_driver.py PLAN.json: drives the auditor's web page
(docs/auditor-page.md) in headless Chromium through the W3C WebDriver
protocol, with Python's standard library only (urllib, json), and checks it
against PLAN, which test_auditor_page.c wrote from the verified log:

  url, vkey        the page (kmsd's /audit/) and the log's verifier key
  public           kmsd's published directory, where bytes are tampered with
  profiles         a folder for Chromium's profile and chromedriver's log
  screenshot       where the verified page's screenshot goes
  size             the checkpoint's tree size
  filters          [{from, until, principal, key, operation, status, count}]
  prove            an entry index to prove
  tamper_entry,    {path, offset, from, to, expect}: one byte of an entry
  tamper_tile      bundle / a hash tile, and the FAILED line the page must show

With "measure": true in PLAN it only verifies, prints how long the page
took (docs/auditor-page.md, "Cost"), and checks a few inclusion proofs.

Every wait polls the page's DOM with a bound; nothing asserts on a
duration. chromedriver and Chromium are stopped at the end whatever
happened; the test also kills this process's whole group.
Exit 0: every check passed; 1: one did not (the line says which).
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

CHROMEDRIVER = '/usr/bin/chromedriver'
CHROMIUM = '/usr/bin/chromium'
# Without the background-networking flags Chromium tries to reach Google's
# services, and on a closed network its connections are refused.
CHROMIUM_FLAGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', '--window-size=1280,900',
]
ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'  # the W3C web element key
START_WAIT_S = 30     # chromedriver answering /status
STATUS_WAIT_S = 60    # the page's status leaving "working"
POLL_S = 0.1
HTTP_TIMEOUT_S = 90   # one WebDriver command (a new session starts Chromium)
FILTERS = ('from', 'until', 'principal', 'key', 'operation', 'status')
# Go's PeterNeumann test key (docs/audit-log.md, section 7): a real Ed25519
# public key that did not sign this log.
OTHER_PUBLIC_KEY = base64.b64decode('ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW')[1:]

# WebDriver is on loopback: never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Failure(Exception):
    pass


def check(ok, message):
    if not ok:
        raise Failure(message)


class Session:
    """One WebDriver session: one Chromium with a fresh profile."""

    def __init__(self, port, profile):
        self.base = 'http://127.0.0.1:%d' % port
        self.id = None
        caps = {'capabilities': {'alwaysMatch': {
            'browserName': 'chrome',
            'goog:chromeOptions': {'binary': CHROMIUM,
                                   'args': CHROMIUM_FLAGS + ['--user-data-dir=' + profile]},
        }}}
        self.id = self.call('POST', '/session', caps)['sessionId']

    def call(self, method, path, body=None):
        """A command of this session (path after /session/{id}), or before
        the session exists, of the server."""
        url = self.base + ('/session/' + self.id if self.id else '') + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={'Content-Type': 'application/json'})
        try:
            with OPENER.open(request, timeout=HTTP_TIMEOUT_S) as r:
                return json.load(r)['value']
        except urllib.error.HTTPError as e:
            value = json.load(e).get('value', {})
            raise Failure('WebDriver %s %s: %s: %s' % (method, path, value.get('error'),
                                                       str(value.get('message', ''))[:400]))

    def goto(self, url):
        self.call('POST', '/url', {'url': url})

    def find(self, css):
        return self.call('POST', '/element', {'using': 'css selector', 'value': css})[ELEMENT]

    def count(self, css):
        return len(self.call('POST', '/elements', {'using': 'css selector', 'value': css}))

    def type(self, css, text):
        element = self.find(css)
        self.call('POST', '/element/%s/clear' % element, {})
        if text:
            self.call('POST', '/element/%s/value' % element, {'text': text})

    def click(self, css):
        self.call('POST', '/element/%s/click' % self.find(css), {})

    def text(self, css):
        return self.call('GET', '/element/%s/text' % self.find(css))

    def attribute(self, css, name):
        return self.call('GET', '/element/%s/attribute/%s' % (self.find(css), name))

    def screenshot(self, path):
        """The page from its top, in a window tall enough for all of it."""
        self.call('POST', '/window/rect', {'width': 1360, 'height': 1500})
        self.call('POST', '/execute/sync', {'script': 'window.scrollTo(0, 0);', 'args': []})
        png = base64.b64decode(self.call('GET', '/screenshot'))
        with open(path, 'wb') as f:
            f.write(png)

    def quit(self):
        if self.id:
            try:
                self.call('DELETE', '')
            except (Failure, OSError, ValueError):
                pass
            self.id = None


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_chromedriver(folder):
    port = free_port()
    log = open(os.path.join(folder, 'chromedriver.log'), 'wb')
    proc = subprocess.Popen([CHROMEDRIVER, '--port=%d' % port], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_WAIT_S
    while True:
        check(proc.poll() is None, 'chromedriver exited (%s) at start; see %s/chromedriver.log'
              % (proc.returncode, folder))
        try:
            with OPENER.open('http://127.0.0.1:%d/status' % port, timeout=5) as r:
                if json.load(r)['value'].get('ready'):
                    return proc, port
        except (OSError, ValueError):
            pass
        check(time.monotonic() < deadline, 'chromedriver did not answer within %d s' % START_WAIT_S)
        time.sleep(POLL_S)


def wait_done(s, css):
    """Polls the status element until it says verified or failed (bounded)."""
    deadline = time.monotonic() + STATUS_WAIT_S
    while True:
        state = s.attribute(css, 'data-state')
        if state in ('verified', 'failed'):
            return state, s.text(css)
        check(time.monotonic() < deadline, '%s still %r after %d s: %r'
              % (css, state, STATUS_WAIT_S, s.text(css)))
        time.sleep(POLL_S)


def verify(s, plan, key):
    """A fresh load of the page, the key pasted, Verify pressed: the outcome."""
    s.goto(plan['url'])
    s.type('#vkey', key)
    t0 = time.monotonic()
    s.click('#verify')
    state, text = wait_done(s, '#status')
    return state, text, time.monotonic() - t0


def expect_failed(s, plan, key, wanted, what):
    state, text, _ = verify(s, plan, key)
    check(state == 'failed' and text.startswith('FAILED: ') and wanted in text,
          '%s: the page shows %s %r, wanted FAILED with %r' % (what, state, text, wanted))
    print('ok: %s: %s' % (what, text))


def other_key(vkey):
    """A well-formed verifier key of the same name, another public key."""
    name = vkey.split('+', 1)[0]
    key_id = hashlib.sha256(name.encode() + b'\n\x01' + OTHER_PUBLIC_KEY).digest()[:4]
    return '%s+%s+%s' % (name, key_id.hex(), base64.b64encode(b'\x01' + OTHER_PUBLIC_KEY).decode())


def mangled_key(vkey):
    """The same key with one digit of its key id changed."""
    name, key_id, key = vkey.split('+', 2)
    digit = '0' if key_id[0] != '0' else '1'
    return '%s+%s+%s' % (name, digit + key_id[1:], key)


class Tampered:
    """One byte of a published file changed for the with-block, then put back."""

    def __init__(self, public, change):
        self.path = os.path.join(public, change['path'])
        self.offset, self.old, self.new = change['offset'], change['from'], change['to']

    def _put(self, expect, value):
        with open(self.path, 'r+b') as f:
            f.seek(self.offset)
            check(f.read(1) == bytes([expect]), '%s: byte %d is not the one expected'
                  % (self.path, self.offset))
            f.seek(self.offset)
            f.write(bytes([value]))

    def __enter__(self):
        self._put(self.old, self.new)

    def __exit__(self, *exc):
        self._put(self.new, self.old)


def checkpoint_root_change(public):
    """The first character of the checkpoint's root line, A <-> B."""
    with open(os.path.join(public, 'checkpoint'), 'rb') as f:
        text = f.read()
    lines = text.split(b'\n')
    offset = len(lines[0]) + len(lines[1]) + 2
    old = text[offset]
    return {'path': 'checkpoint', 'offset': offset, 'from': old,
            'to': ord('B') if old != ord('B') else ord('A')}


def apply_filter(s, f):
    for name in FILTERS:
        s.type('#f-' + name, f.get(name, ''))


def check_verified(s, plan):
    state, text, seconds = verify(s, plan, plan['vkey'])
    check(state == 'verified', 'the page shows %s %r, wanted verified' % (state, text))
    check(text.startswith('Verified: %d entries' % plan['size']),
          'the status %r does not name %d entries' % (text, plan['size']))
    check(s.text('#cp-size') == str(plan['size']), 'the tree size shown is %r' % s.text('#cp-size'))
    return text, seconds


def check_filters(s, plan):
    for f in plan['filters']:
        apply_filter(s, f)
        matches = s.attribute('#count', 'data-matches')
        rows = s.count('#rows tr')
        shown = {k: v for k, v in f.items() if v and k != 'count'}
        check(matches == str(f['count']) and rows == f['count'],
              'filter %s: %s matches, %d rows; the log has %d' % (shown, matches, rows, f['count']))
        print('ok: filter %s: %d rows' % (shown, rows))
    apply_filter(s, {})
    check(s.count('#rows tr') == plan['size'], 'without filters not every entry is shown')


def prove(s, index):
    """Asks for the inclusion proof of entry index: it must verify."""
    s.type('#p-index', str(index))
    s.click('#prove')
    state, text = wait_done(s, '#proof')
    check(state == 'verified' and text.startswith('Included: entry %d ' % index),
          'the proof of entry %d: %s %r' % (index, state, text))
    print('ok: %s' % text)


def check_proofs(s, plan):
    """The first and the last entry (the tree's left and right edges), then
    the planned one, which stays shown."""
    for index in (0, plan['size'] - 1, plan['prove']):
        prove(s, index)
    check('"status": "ACCESS_DENIED"' in s.text('#entry-json'), 'the proved entry is not shown')


def run(plan, port):
    profile = os.path.join(plan['profiles'], 'profile')
    os.makedirs(profile, exist_ok=True)
    s = Session(port, profile)
    try:
        text, seconds = check_verified(s, plan)
        print('ok: %s' % text)
        print('measured: the page verified %d entries in %.0f ms' % (plan['size'], seconds * 1000))
        if plan.get('measure'):
            for index in (0, 1, plan['size'] // 2, max(0, plan['size'] - 257), plan['size'] - 1):
                prove(s, index)
            return
        check_filters(s, plan)
        check_proofs(s, plan)
        s.screenshot(plan['screenshot'])
        print('ok: screenshot %s' % plan['screenshot'])

        expect_failed(s, plan, other_key(plan['vkey']), 'is not signed by key', 'another key')
        expect_failed(s, plan, mangled_key(plan['vkey']), 'does not match its name and public key',
                      'a mistyped key')
        expect_failed(s, plan, plan['vkey'] + 'A', 'the verifier key is not', 'a key with a byte more')
        with Tampered(plan['public'], plan['tamper_entry']):
            expect_failed(s, plan, plan['vkey'], plan['tamper_entry']['expect'], 'a tampered entry')
        with Tampered(plan['public'], plan['tamper_tile']):
            expect_failed(s, plan, plan['vkey'], plan['tamper_tile']['expect'], 'a tampered hash tile')
        with Tampered(plan['public'], checkpoint_root_change(plan['public'])):
            expect_failed(s, plan, plan['vkey'], 'the checkpoint\'s signature does not verify',
                          'a tampered checkpoint')
        tile = os.path.join(plan['public'], plan['tamper_tile']['path'])
        os.rename(tile, tile + '.away')
        try:
            expect_failed(s, plan, plan['vkey'], plan['tamper_tile']['path'] + ': missing (HTTP 404)',
                          'a missing hash tile')
        finally:
            os.rename(tile + '.away', tile)
        text, _ = check_verified(s, plan)
        print('ok: restored: %s' % text)
    finally:
        s.quit()


def main():
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    os.makedirs(plan['profiles'], exist_ok=True)
    driver = None
    try:
        driver, port = start_chromedriver(plan['profiles'])
        run(plan, port)
    except Failure as e:
        print('FAILED: %s' % e)
        return 1
    except (OSError, ValueError, KeyError) as e:
        print('FAILED: talking to chromedriver: %r' % e)
        return 1
    finally:
        if driver:
            driver.terminate()
            try:
                driver.wait(10)
            except subprocess.TimeoutExpired:
                driver.kill()
    print('auditor page: every check passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
