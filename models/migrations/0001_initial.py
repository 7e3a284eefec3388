from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.account import Role
from models.base import utcnow
from models.lifecycle import Channel
from models.outbox import Channel, Status
from models.patient import Sex, SpaceStatus
from models.professional import Profession, Sector
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Establishment',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finess', fields.CharField(unique=True, max_length=9)),
                ('name', fields.CharField(default='', max_length=200)),
            ],
            options={'table': 'establishment', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='FailedAttempt',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('key', fields.CharField(db_index=True, max_length=80)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'failed_attempt', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Operator',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
            ],
            options={'table': 'operator', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Staff who enrol people and read the lifecycle status of a space, never its health data.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='OutboxMessage',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('channel', fields.CharEnumField(description='EMAIL: EMAIL\nPOST: POST', enum_type=Channel, max_length=8)),
                ('recipient', fields.TextField(unique=False)),
                ('subject', fields.CharField(max_length=255)),
                ('body', fields.TextField(unique=False)),
                ('secret', fields.TextField(null=True, unique=False)),
                ('kind', fields.CharField(max_length=40)),
                ('status', fields.CharEnumField(default=Status.PENDING, description='PENDING: PENDING\nSENT: SENT\nPRINTED: PRINTED\nFAILED: FAILED', enum_type=Status, max_length=8)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(default=utcnow, auto_now=False, auto_now_add=False)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_message', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Professional',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('rpps', fields.CharField(unique=True, max_length=11)),
                ('first_name', fields.CharField(max_length=100)),
                ('last_name', fields.CharField(max_length=100)),
                ('profession', fields.CharEnumField(description='MEDECIN: MEDECIN\nPHARMACIEN: PHARMACIEN\nINFIRMIER: INFIRMIER\nSAGE_FEMME: SAGE_FEMME\nCHIRURGIEN_DENTISTE: CHIRURGIEN_DENTISTE\nMASSEUR_KINESITHERAPEUTE: MASSEUR_KINESITHERAPEUTE\nPSYCHOLOGUE: PSYCHOLOGUE\nASSISTANT_SERVICE_SOCIAL: ASSISTANT_SERVICE_SOCIAL\nEDUCATEUR_SPECIALISE: EDUCATEUR_SPECIALISE\nOTHER: OTHER', enum_type=Profession, max_length=32)),
                ('sector', fields.CharEnumField(description='HEALTH: HEALTH\nMEDICO_SOCIAL: MEDICO_SOCIAL\nSOCIAL: SOCIAL', enum_type=Sector, max_length=16)),
                ('establishment', fields.ForeignKeyField('models.Establishment', source_field='establishment_id', null=True, db_constraint=True, to_field='id', related_name='professionals', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'professional', 'app': 'models', 'indexes': [Index(fields=['last_name', 'first_name'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Patient',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('nir_encrypted', fields.BinaryField(null=True)),
                ('nir_hash', fields.CharField(unique=True, max_length=64)),
                ('first_name', fields.CharField(max_length=100)),
                ('last_name', fields.CharField(max_length=100)),
                ('birth_date', fields.DateField()),
                ('sex', fields.CharEnumField(description='FEMALE: FEMALE\nMALE: MALE', enum_type=Sex, max_length=8)),
                ('status', fields.CharEnumField(default=SpaceStatus.PENDING, description='PENDING: PENDING\nACTIVE: ACTIVE\nOPPOSED: OPPOSED\nCLOSED: CLOSED', enum_type=SpaceStatus, max_length=8)),
                ('contact_email', fields.CharField(null=True, max_length=254)),
                ('postal_address', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('activated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('opposed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('archived_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('delete_by', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('emergency_access_opposed', fields.BooleanField(default=False)),
                ('treating_doctor', fields.ForeignKeyField('models.Professional', source_field='treating_doctor_id', null=True, db_constraint=True, to_field='id', related_name='treated_patients', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'patient', 'app': 'models', 'indexes': [Index(fields=['last_name', 'first_name'])], 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Account',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('role', fields.CharEnumField(description='PATIENT: PATIENT\nPROFESSIONAL: PROFESSIONAL\nOPERATOR: OPERATOR', enum_type=Role, max_length=16)),
                ('patient', fields.OneToOneField('models.Patient', source_field='patient_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('professional', fields.OneToOneField('models.Professional', source_field='professional_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('operator', fields.OneToOneField('models.Operator', source_field='operator_id', null=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'account', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='ActivationCode',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='activation_codes', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('channel', fields.CharEnumField(description='EMAIL: EMAIL\nPOST: POST', enum_type=Channel, max_length=8)),
                ('sent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('superseded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'activation_code', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='LoginChallenge',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='challenges', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failures', fields.IntField(default=0)),
            ],
            options={'table': 'login_challenge', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A pending two-factor login: the one-time code went out by e-mail.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Representation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('representative', fields.ForeignKeyField('models.Patient', source_field='representative_id', db_constraint=True, to_field='id', related_name='dependent_links', on_delete=OnDelete.CASCADE)),
                ('dependent', fields.ForeignKeyField('models.Patient', source_field='dependent_id', db_constraint=True, to_field='id', related_name='representative_links', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'representation', 'app': 'models', 'unique_together': (('representative', 'dependent'),), 'pk_attr': 'id', 'table_description': 'A legal representative of a minor. The link ends by itself on the 18th birthday.'},
            bases=['Entity'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'session', 'app': 'models', 'pk_attr': 'id'},
            bases=['Entity'],
        ),
    ]
