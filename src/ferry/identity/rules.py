"""ferry's default policy: Glance's, Cinder's and Nova's current defaults (project scope).

Check strings are oslo.policy's. A target carries ``project_id`` (the resource's project) and,
for images, ``owner``, ``visibility`` and ``member_id`` (the caller's project when it is one of
the image's members). Operators override any rule by name in a policy file.
"""

from __future__ import annotations

from oslo_policy.policy import RuleDefault

ADMIN = "role:admin"
SERVICE = "role:service"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
ADMIN_OR_PROJECT_MEMBER = f"{ADMIN} or ({PROJECT_MEMBER})"
ADMIN_OR_PROJECT_READER = f"{ADMIN} or ({PROJECT_READER})"
_SEEN = (
    "project_id:%(project_id)s or project_id:%(member_id)s or "
    '"community":%(visibility)s or "public":%(visibility)s or "shared":%(visibility)s'
)
ADMIN_OR_READER_GET_IMAGE = f"{ADMIN} or (role:reader and ({_SEEN}))"
ADMIN_OR_MEMBER_DOWNLOAD_IMAGE = f"{ADMIN} or (role:member and ({_SEEN}))"
ADMIN_OR_MEMBER_CREATE_IMAGE = f"{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
ADMIN_OR_SHARED_MEMBER = f"{ADMIN} or (role:member and project_id:%(member_id)s)"
ADMIN_OR_READER_OR_SHARED_MEMBER = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
)
ADMIN_OR_READER_GET_NAMESPACE = (
    f'{ADMIN} or (role:reader and (project_id:%(project_id)s or "public":%(visibility)s))'
)

_IMAGES = {
    "add_image": ADMIN_OR_MEMBER_CREATE_IMAGE,
    "delete_image": ADMIN_OR_PROJECT_MEMBER,
    "get_image": ADMIN_OR_READER_GET_IMAGE,
    "get_images": ADMIN_OR_PROJECT_READER,
    "modify_image": ADMIN_OR_PROJECT_MEMBER,
    "publicize_image": ADMIN,
    "communitize_image": ADMIN_OR_PROJECT_MEMBER,
    "download_image": ADMIN_OR_MEMBER_DOWNLOAD_IMAGE,
    "upload_image": ADMIN_OR_PROJECT_MEMBER,
    "delete_image_location": ADMIN,  # also DELETE /v2/stores/{store}/{image}
    "get_image_location": ADMIN_OR_PROJECT_READER,
    "set_image_location": ADMIN_OR_PROJECT_MEMBER,
    # v2.17's locations API: for Nova and Cinder (the service role) and the image's owner;
    # listing shows backend URLs (OSSN-0090), so to services only. ferry lets admins too.
    "add_image_location": f"{ADMIN} or {SERVICE} or ({PROJECT_MEMBER} and project_id:%(owner)s)",
    "fetch_image_location": f"{ADMIN} or {SERVICE}",
    "add_member": ADMIN_OR_PROJECT_MEMBER,
    "delete_member": ADMIN_OR_PROJECT_MEMBER,
    "get_member": ADMIN_OR_READER_OR_SHARED_MEMBER,
    "get_members": ADMIN_OR_READER_OR_SHARED_MEMBER,
    "modify_member": ADMIN_OR_SHARED_MEMBER,
    "deactivate": ADMIN_OR_PROJECT_MEMBER,
    "reactivate": ADMIN_OR_PROJECT_MEMBER,
    "copy_image": ADMIN,
    "get_task": ADMIN,
    "get_tasks": ADMIN,
    "add_task": ADMIN,
    "modify_task": ADMIN,
    "tasks_api_access": ADMIN,
    "stores_info_detail": ADMIN,
    "cache_list": ADMIN,  # /v2/cache: Glance's defaults
    "cache_image": ADMIN,
    "cache_delete": ADMIN,
    "cache_clear": ADMIN,
}

_METADEFS = {
    "get_metadef_namespace": ADMIN_OR_READER_GET_NAMESPACE,
    "get_metadef_namespaces": ADMIN_OR_PROJECT_READER,
    "modify_metadef_namespace": ADMIN,
    "add_metadef_namespace": ADMIN,
    "delete_metadef_namespace": ADMIN,
    "get_metadef_object": ADMIN_OR_READER_GET_NAMESPACE,
    "get_metadef_objects": ADMIN_OR_READER_GET_NAMESPACE,
    "modify_metadef_object": ADMIN,
    "add_metadef_object": ADMIN,
    "delete_metadef_object": ADMIN,
    "list_metadef_resource_types": ADMIN_OR_PROJECT_READER,
    "get_metadef_resource_type": ADMIN_OR_READER_GET_NAMESPACE,
    "add_metadef_resource_type_association": ADMIN,
    "remove_metadef_resource_type_association": ADMIN,
    "get_metadef_property": ADMIN_OR_READER_GET_NAMESPACE,
    "get_metadef_properties": ADMIN_OR_READER_GET_NAMESPACE,
    "modify_metadef_property": ADMIN,
    "add_metadef_property": ADMIN,
    "remove_metadef_property": ADMIN,
    "get_metadef_tag": ADMIN_OR_READER_GET_NAMESPACE,
    "get_metadef_tags": ADMIN_OR_READER_GET_NAMESPACE,
    "modify_metadef_tag": ADMIN,
    "add_metadef_tag": ADMIN,
    "add_metadef_tags": ADMIN,
    "delete_metadef_tag": ADMIN,
    "delete_metadef_tags": ADMIN,
}

# Cinder's and Nova's names, for what ferry's volume layer does.
_VOLUMES = {
    "volume:create": ADMIN_OR_PROJECT_MEMBER,
    "volume:get": ADMIN_OR_PROJECT_READER,
    "volume:get_all": ADMIN_OR_PROJECT_READER,
    "volume:update": ADMIN_OR_PROJECT_MEMBER,
    "volume:delete": ADMIN_OR_PROJECT_MEMBER,
    "volume:create_snapshot": ADMIN_OR_PROJECT_MEMBER,
    "volume:get_snapshot": ADMIN_OR_PROJECT_READER,
    "volume:get_all_snapshots": ADMIN_OR_PROJECT_READER,
    "volume:delete_snapshot": ADMIN_OR_PROJECT_MEMBER,
    "volume:upload_to_image": ADMIN_OR_PROJECT_MEMBER,
    "volume_extension:volume_admin_actions:reset_status": ADMIN,
    "volume_extension:snapshot_admin_actions:reset_status": ADMIN,
    "volume_extension:backup_admin_actions:reset_status": ADMIN,
    "backup:create": ADMIN_OR_PROJECT_MEMBER,
    "backup:get": ADMIN_OR_PROJECT_READER,
    "backup:get_all": ADMIN_OR_PROJECT_READER,
    "backup:delete": ADMIN_OR_PROJECT_MEMBER,
    "backup:restore": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:servers:create": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:servers:show": ADMIN_OR_PROJECT_READER,
    "os_compute_api:servers:index": ADMIN_OR_PROJECT_READER,
    "os_compute_api:servers:delete": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:servers:create_image": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:servers:start": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:servers:stop": ADMIN_OR_PROJECT_MEMBER,
    "os_compute_api:os-admin-actions:reset_state": ADMIN,
}

DEFAULTS: list[RuleDefault] = [
    RuleDefault("context_is_admin", ADMIN, "The admin role: sees every project's resources."),
    RuleDefault("default", "", "Rules no default names fall back to this."),
    *(RuleDefault(name, check) for table in (_IMAGES, _METADEFS, _VOLUMES)
      for name, check in table.items()),
]  # fmt: skip
