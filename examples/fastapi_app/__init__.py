"""A small FastAPI app with its own users and login that uses roomcast as a
library: roomcast mounted under ``/rt`` behind the app's session, rooms
authorized from the app's user table, messages moderated in ``on_publish``,
and announcements published from an ordinary POST handler. See README.md.

* users.py: the user table, passwords, sessions and the session dependencies
* chat.py: the rooms, ``authenticate``, the moderation hook, the Roomcast
* main.py: the FastAPI app, its routes and the mount
* static/: the app's own pages, script and style
"""
