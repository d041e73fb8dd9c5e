"""AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python) for fixed credentials and time:
the reference spate's `MskIam` tokens are compared with. For each case argument
(`"REGION ACCESS_KEY SECRET SESSION_TOKEN|- YYYYMMDDTHHMMSSZ"`) prints
`TOKEN EXPIRY_MS`; the first line is the signer's User-Agent.
"""
import datetime
import sys

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

print(MSKAuthTokenProvider.__get_user_agent__(), flush=True)
for line in sys.argv[1:]:
    region, key, secret, session, when = line.split()
    fixed = datetime.datetime.strptime(when, "%Y%m%dT%H%M%SZ")
    # The signing time, as botocore reads the clock.
    botocore.auth.get_current_datetime = lambda *a, **k: fixed

    class Fixed(CredentialProvider):
        METHOD = "fixed"

        def load(self):
            return Credentials(key, secret, None if session == "-" else session)

    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
        region, Fixed())
    print(token, expiry_ms, flush=True)
