"""nginx in front of the viewer and the PACS: one origin that serves OHIF at its root and passes /dicom-web to
Orthanc, and asks for the PACS's login first (a wrong one gets 401 here, before Orthanc)."""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import shutil
from pathlib import Path

NGINX = "nginx"
MIME_TYPES = Path("/etc/nginx/mime.types")


def nginx_binary() -> str | None:
    return shutil.which(NGINX) or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)


def htpasswd_line(user: str, password: str) -> str:
    """`user:{SSHA}...`: a salted hash of the password, which nginx checks."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def nginx_config(folder: Path, address: str, port: int, dist: Path, app_config: Path, links: Path, pacs: str) -> str:
    """The server: OHIF's files (its app-config.js the stack's), /dicom-web and /wado passed to Orthanc with the
    browser's login, which Orthanc checks again, and /studies/TOKEN the pages of shared/viewer_links.py in
    `links`. `pacs`: Orthanc's host:port. `folder`: nginx's pid, logs and temporary files."""
    # Started as root, nginx would hand its workers to `nobody`, who cannot read the 0600 files.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return f"""# Written by services/viewer/nginx.py.
{user}worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  include {MIME_TYPES};
  access_log off;
  client_body_temp_path {folder}/client-body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  gzip on;
  gzip_types application/javascript text/css application/wasm application/json application/dicom+json;
  server {{
    listen {address}:{port};
    auth_basic "FracAtlas viewer";
    auth_basic_user_file {folder}/htpasswd;
    root {dist};
    location = /app-config.js {{ alias {app_config}; }}
    location ~ "^/studies/([A-Za-z0-9_-]{{16,64}})$" {{
      default_type text/html;
      add_header Cache-Control no-store;
      alias {links}/$1.html;
    }}
    location ~ ^/(dicom-web|wado)(/|$) {{
      proxy_pass http://{pacs};
      proxy_set_header Host $http_host;
      proxy_buffering off;
      client_max_body_size 0;
    }}
    location / {{ try_files $uri /index.html; }}
  }}
}}
"""
