"""An SMTP server for the notification tests that insists on STARTTLS and on
authentication (aiosmtpd, from Debian's python3-aiosmtpd), delivering into a Maildir.

Usage: smtp_tls.py HOST PORT MAILDIR CERT KEY USER PASSWORD

Mail is accepted only after STARTTLS with CERT/KEY and AUTH as USER/PASSWORD; a
wrong password is refused with 535.
"""

import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

host, port, maildir, cert, key, user, password = sys.argv[1:8]

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    return AuthResult(success=ok)


controller = Controller(
    Mailbox(maildir),
    hostname=host,
    port=int(port),
    tls_context=context,
    require_starttls=True,
    authenticator=authenticate,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
threading.Event().wait()
