"""The desktop softphone (``softphone desktop``): a Qt window over the phone.

``store`` (SQLite: account, history, the R-EMERG-5 acknowledgement; the password in the
keyring or a 0600 file), ``numbers`` (what is typed or pasted, made dialable), ``phone`` (the
Qt-free phone: the user agent, the call's audio, the guard's one-phone share, quality),
``window`` (the widgets). The entry point and the event loop are in
:mod:`softphone.apps.desktop`.
"""
