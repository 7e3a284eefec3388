"""OpenID Providers for the FranceConnect tests: the real one (npm `oidc-provider`, this
folder's node project) and a stand-in whose tokens the tests mint (support.py)."""
